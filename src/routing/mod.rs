//! Local routing: every accepted publish also goes to the matching subscriptions of clients,
//! retained messages wait for the subscriptions to come, and persistent sessions keep their
//! subscriptions and QoS 1/2 deliveries while their client is away.
//!
//! ```text
//! publish.rs ──plan──▶ Router: matching subscriptions, ACL checked ──▶ Plan
//!   │                      persistent sessions: the delivery as a SessionCopy of the record ─┐
//!   ▼                                                                                       │
//! storage actor: one commit holds the message and its session_queue rows ◀──────────────────┘
//!   │ (PUBACK to the publisher)
//!   ▼
//! Router::deliver(plan) ──try_send──▶ live queue of a connected subscriber (bounded)
//!                        ──wake─────▶ a persistent session's writer reads its rows
//!                                     (ingress/deliver.rs writes PUBLISH packets;
//!                                     the client's PUBACK/PUBCOMP deletes the row)
//! POST /api/publish (downlink) and wills take the same plan → commit → deliver path.
//! ```
//!
//! The table and the retained messages are shared state behind locks held for a scan, never
//! across an await. Retained messages are durable in the store (`retained` table, written in
//! the transaction that stores the publish); this module keeps the copy that is read at each
//! SUBSCRIBE, loaded from the store at start, as are the persistent sessions (`sessions.rs`).

pub mod inject;
pub mod persist;
pub mod sessions;
pub mod table;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use edge_gateway_actors::metrics::{DeliveryDrop, DeliveryDropLabels, Metrics, QosLabels};
use edge_gateway_actors::record::SessionCopy;
use ntex_bytes::{ByteString, Bytes};
use tokio::sync::mpsc;

use self::table::{Subscription, Table};
use crate::trust::acl::Who;
use crate::trust::auth::Authority;

/// One message on its way to subscribers, shared by all its deliveries.
#[derive(Debug, Clone, Default)]
pub struct Message {
    /// Topic name.
    pub topic: ByteString,
    /// Payload.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: u8,
    /// Published with the retain flag.
    pub retain: bool,
    /// MQTT 5 content type.
    pub content_type: Option<ByteString>,
    /// MQTT 5 user properties.
    pub user_properties: Vec<(ByteString, ByteString)>,
    /// MQTT 5 response topic.
    pub response_topic: Option<ByteString>,
    /// MQTT 5 correlation data.
    pub correlation_data: Option<Bytes>,
    /// MQTT 5 message expiry: not delivered after this (a subscriber gets what is left of it).
    pub expires_at: Option<Instant>,
}

impl Message {
    /// Whether its expiry interval has passed.
    pub fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= Instant::now())
    }
}

/// One message for one subscriber.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub message: Arc<Message>,
    /// The QoS to send it with.
    pub qos: u8,
    /// The retain flag to send.
    pub retain: bool,
    /// MQTT 5 subscription identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
}

/// What a SUBSCRIBE asks about retained messages (MQTT 5 retain handling; 3.1.1: always send).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainHandling {
    /// Send the matching retained messages.
    Send,
    /// Send them only if the subscription is new.
    SendIfNew,
    /// Do not send them.
    DontSend,
}

/// The connection a subscription comes from.
#[derive(Clone, Copy)]
pub struct Client<'a> {
    /// Its number ([`Router::connection_id`]).
    pub conn: u64,
    /// Its delivery queue.
    pub queue: &'a mpsc::Sender<Delivery>,
    /// MQTT 5 (one copy per matching subscription) or 3.1.1 (one per client).
    pub mqtt5: bool,
}

/// The routing table and the retained messages of the gateway; shared by every connection.
pub struct Router {
    table: RwLock<Table>,
    retained: RwLock<BTreeMap<String, Arc<Message>>>,
    authority: Authority,
    metrics: Metrics,
    max_queued: usize,
    next_conn: AtomicU64,
    /// Clients with subscriptions (read on every publish, without the lock).
    subscribers: AtomicUsize,
    /// The longest an offline persistent session is kept (`broker.session_expiry_max_secs`).
    expiry_cap: Option<u32>,
    /// Most persistent sessions (`broker.max_sessions`).
    max_sessions: usize,
    /// The archive's classes (with `archive.enabled`): a full one refuses new messages.
    archive: Option<crate::archive::Classes>,
}

/// Where one accepted message goes, decided before its commit and carried out after it.
#[derive(Default)]
pub struct Plan {
    message: Arc<Message>,
    /// Connected subscribers' live queues.
    live: Vec<(mpsc::Sender<Delivery>, Delivery)>,
    /// Persistent sessions' deliveries, queued in the message's commit.
    copies: Vec<SessionCopy>,
    /// Those sessions, whose writers are woken after the commit (looked up then: a client may
    /// have connected meanwhile).
    wake: Vec<String>,
}

impl Plan {
    /// The message planned.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The deliveries to queue for persistent sessions, for the record's `copies`.
    pub fn take_copies(&mut self) -> Vec<SessionCopy> {
        std::mem::take(&mut self.copies)
    }
}

impl Router {
    /// The archive class refusing a message to `topic` (at its quota with `on_full =
    /// "refuse_ingest"`): checked for every publish, a device's or an injected one.
    pub fn archive_refusing(&self, topic: &str) -> Option<&str> {
        self.archive.as_ref()?.refusing(topic)
    }

    /// A router with the retained messages and persistent sessions the store holds.
    pub fn new(
        stored: sessions::Stored,
        authority: Authority,
        metrics: Metrics,
        limits: sessions::Limits,
        archive: Option<crate::archive::Classes>,
    ) -> Arc<Router> {
        let retained: BTreeMap<String, Arc<Message>> =
            stored.retained.into_iter().map(|r| (r.topic.clone(), Arc::new(persist::retained_message(r)))).collect();
        metrics.retained_messages.set(retained.len() as i64);
        let router = Router {
            table: RwLock::new(sessions::table_of(stored.sessions, stored.heads)),
            retained: RwLock::new(retained),
            authority,
            metrics,
            max_queued: limits.max_queued,
            next_conn: AtomicU64::new(1),
            subscribers: AtomicUsize::new(0),
            expiry_cap: (limits.session_expiry_max_secs > 0).then_some(limits.session_expiry_max_secs),
            max_sessions: limits.max_sessions,
            archive,
        };
        router.counted(&router.read_table());
        Arc::new(router)
    }

    /// Whether any client has a subscription (else a publish that is not retained needs no
    /// routing at all).
    pub fn has_subscribers(&self) -> bool {
        self.subscribers.load(Ordering::Relaxed) > 0
    }

    /// A number for a new connection (whose subscriptions a later connection replaces).
    pub fn connection_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A queue for one client's deliveries.
    pub fn queue(&self) -> (mpsc::Sender<Delivery>, mpsc::Receiver<Delivery>) {
        mpsc::channel(self.max_queued)
    }

    /// What counts the deliveries dropped for `reason` (for a connection's writer, which drops
    /// the ones that expired while queued and counts the ones its client refused).
    pub fn drop_counter(&self, reason: DeliveryDrop) -> prometheus_client::metrics::counter::Counter {
        self.metrics.deliveries_dropped.get_or_create(&DeliveryDropLabels { reason }).clone()
    }

    /// Add (or replace: same filter) a subscription of `client_id` held by connection `conn`;
    /// the retained messages to send for it are queued after it.
    pub fn subscribe(&self, who: &Who, client: Client<'_>, sub: Subscription, handling: RetainHandling) {
        let queue = client.queue;
        let (filter_is_new, share) = {
            let mut table = self.write_table();
            let fresh = || table::Subscriber {
                conn: client.conn,
                identity: who.identity.to_string(),
                queue: Some(queue.clone()),
                subs: Vec::new(),
                copy_per_subscription: client.mqtt5,
                persistent: None,
            };
            let changed = table.update(who.client_id, |slot| {
                let entry = slot.get_or_insert_with(fresh);
                if entry.conn < client.conn {
                    // A newer connection with this client id (not one that resumed a session:
                    // that one holds the entry already): the old one's subscriptions end with it.
                    *entry = fresh();
                } else if entry.conn > client.conn {
                    // A SUBSCRIBE the connection that was taken over had still buffered: ignored.
                    return None;
                }
                let existed = entry.subs.iter().position(|s| s.filter == sub.filter);
                match existed {
                    Some(i) => entry.subs[i] = sub.clone(),
                    None => entry.subs.push(sub.clone()),
                }
                Some(existed.is_none())
            });
            let Some(filter_is_new) = changed else { return };
            self.counted(&table);
            (filter_is_new, sub.share.is_some())
        };
        let send = match handling {
            RetainHandling::Send => true,
            RetainHandling::SendIfNew => filter_is_new,
            RetainHandling::DontSend => false,
        };
        // Retained messages are not sent for shared subscriptions (MQTT 5 4.8.2).
        if !send || share {
            return;
        }
        let matching: Vec<Arc<Message>> =
            self.read_retained().iter().filter(|(t, m)| sub.matches(t) && !m.expired()).map(|(_, m)| m.clone()).collect();
        for message in matching {
            if !self.authority.may_subscribe(who, &message.topic).is_allowed() {
                self.dropped(DeliveryDrop::NotAuthorized);
                continue;
            }
            let qos = message.qos.min(sub.qos);
            let delivery = Delivery { message, qos, retain: true, subscription_ids: sub.id.into_iter().collect() };
            self.offer(queue, delivery);
        }
    }

    /// Remove `client_id`'s subscription to `filter`; whether it had one.
    pub fn unsubscribe(&self, client_id: &str, conn: u64, filter: &str) -> bool {
        let mut table = self.write_table();
        let removed = table.update(client_id, |slot| {
            let entry = slot.as_mut().filter(|e| e.conn == conn)?;
            let before = entry.subs.len();
            entry.subs.retain(|s| s.filter != filter);
            let removed = entry.subs.len() < before;
            // A persistent session stays without subscriptions (its row is rewritten).
            if entry.subs.is_empty() && entry.persistent.is_none() {
                *slot = None;
            }
            Some(removed)
        });
        let Some(removed) = removed else { return false };
        self.counted(&table);
        removed
    }

    /// Where `message` (published by client `from`) goes: every matching subscription whose
    /// client the ACL (as it is now) lets receive it. Decided before the message's commit, so a
    /// persistent session's delivery is queued in that commit; carried out by [`Router::deliver`]
    /// after it.
    pub fn plan(&self, from: &str, message: Message) -> Plan {
        let mut plan = Plan { message: Arc::new(message), ..Plan::default() };
        if !self.has_subscribers() || plan.message.expired() {
            return plan;
        }
        let table = self.read_table();
        for target in table.targets(&plan.message.topic, from) {
            let who = Who { identity: &target.subscriber.identity, client_id: target.client_id };
            if !self.authority.may_subscribe(&who, &plan.message.topic).is_allowed() {
                self.dropped(DeliveryDrop::NotAuthorized);
                continue;
            }
            let delivery = Delivery {
                message: plan.message.clone(),
                qos: plan.message.qos.min(target.qos),
                retain: plan.message.retain && target.retain_as_published,
                subscription_ids: target.ids,
            };
            match (&target.subscriber.persistent, &target.subscriber.queue) {
                // QoS 1 and 2 to a persistent session: queued in the store, sent from there.
                (Some(_), _) if delivery.qos > 0 => {
                    plan.copies.push(SessionCopy { client_id: target.client_id.to_string(), value: persist::encode_delivery(&delivery) });
                    plan.wake.push(target.client_id.to_string());
                }
                (_, Some(queue)) => plan.live.push((queue.clone(), delivery)),
                // QoS 0 to a session whose client is away: not kept (as mosquitto by default).
                (_, None) => {}
            }
        }
        plan
    }

    /// Carry out `plan` once its message was stored: a retained message replaces (an empty
    /// payload: clears) the topic's retained message; live deliveries are queued and the
    /// writers of persistent sessions woken.
    pub fn deliver(&self, plan: Plan) {
        let message = plan.message;
        if message.retain {
            let mut retained = self.write_retained();
            if message.payload.is_empty() {
                retained.remove(message.topic.as_str());
            } else {
                retained.insert(message.topic.to_string(), message.clone());
            }
            self.metrics.retained_messages.set(retained.len() as i64);
        }
        for (queue, delivery) in plan.live {
            self.offer(&queue, delivery);
        }
        if !plan.wake.is_empty() {
            let table = self.read_table();
            for client_id in &plan.wake {
                if let Some(wake) = table.get(client_id).and_then(|e| e.persistent.as_ref()).and_then(|p| p.wake.as_ref()) {
                    wake.notify_one();
                }
            }
        }
    }

    /// Queue one live delivery (its ACL check was done).
    fn offer(&self, queue: &mpsc::Sender<Delivery>, delivery: Delivery) {
        if delivery.message.expired() {
            self.dropped(DeliveryDrop::Expired);
            return;
        }
        let qos = delivery.qos.min(2);
        match queue.try_send(delivery) {
            Ok(()) => {
                self.metrics.deliveries.get_or_create(&QosLabels { qos }).inc();
            }
            Err(mpsc::error::TrySendError::Full(_)) => self.dropped(DeliveryDrop::QueueFull),
            // The connection is closing; its entry goes with it.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// After a change of the table: the gauge, and the count every publish reads.
    fn counted(&self, table: &Table) {
        self.metrics.subscriptions.set(table.count() as i64);
        self.subscribers.store(table.subscribers(), Ordering::Relaxed);
    }

    pub(crate) fn dropped(&self, reason: DeliveryDrop) {
        self.metrics.deliveries_dropped.get_or_create(&DeliveryDropLabels { reason }).inc();
    }

    /// Whether `identity` may publish to `topic` (the downlink's check; refusals are counted).
    pub fn may_publish(&self, identity: &str, topic: &str) -> bool {
        self.authority.may_publish(&Who { identity, client_id: identity }, topic).is_allowed()
    }

    /// A client's subscriptions (filter, granted QoS), for the device view.
    pub fn subscriptions_of(&self, client_id: &str) -> Vec<(String, u8)> {
        self.read_table().get(client_id).map(|e| e.subs.iter().map(|s| (s.filter.clone(), s.qos)).collect()).unwrap_or_default()
    }

    fn read_table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read_retained(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Message>>> {
        self.retained.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_retained(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Message>>> {
        self.retained.write().unwrap_or_else(|e| e.into_inner())
    }
}
