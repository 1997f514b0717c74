//! The subscriptions of connected clients, and which of them a topic reaches.
//!
//! One entry per client id (the connection that holds it, its identity, its queue and its
//! filters). With overlapping filters, an MQTT 3.1.1 client gets a topic once, at the highest
//! QoS of its matching filters; an MQTT 5 client gets one copy per matching subscription, each
//! with its own QoS and subscription identifier (MQTT 5 3.3.4 allows both; this is what
//! mosquitto 2 does, and `tests/it/broker.rs` runs the same case against it). Shared subscriptions (`$share/<group>/<filter>`) reach one member per group and
//! filter, in turn. The clients with subscriptions are scanned linearly: a site has tens or
//! hundreds of subscribing clients, not millions. Only those: a fleet of devices on persistent
//! sessions that only publish has an entry each, and a scan of them all for every publish cut
//! ingest to a third with 5,000 of them (docs/BENCHMARKS.md, "Local routing").

use std::collections::{HashMap, HashSet};

use tokio::sync::mpsc;

use super::Delivery;
use crate::trust::acl::Who;
use crate::trust::acl::pattern::{Pattern, PatternError};

/// One subscription, as granted.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The filter as the client sent it (with `$share/<group>/` for a shared one).
    pub filter: String,
    /// The filter to match topics with (without the `$share/<group>/` prefix).
    pattern: Pattern,
    /// `Some(group)` for `$share/<group>/<filter>`.
    pub share: Option<String>,
    /// Granted QoS (0, 1 or 2).
    pub qos: u8,
    /// MQTT 5: do not send the client's own publishes back.
    pub no_local: bool,
    /// MQTT 5: keep the retain flag of live messages.
    pub retain_as_published: bool,
    /// MQTT 5 subscription identifier.
    pub id: Option<u32>,
}

impl Subscription {
    /// Parse `filter` (a shared one too); the error says what is wrong with it.
    pub fn new(filter: &str, qos: u8, no_local: bool, retain_as_published: bool, id: Option<u32>) -> Result<Self, PatternError> {
        let (share, inner) = match filter.strip_prefix("$share/").and_then(|rest| rest.split_once('/')) {
            Some((group, inner)) if !group.is_empty() && !group.contains(['+', '#']) => (Some(group.to_string()), inner),
            Some(_) => return Err(PatternError::Filter("a shared subscription is $share/<group>/<filter>")),
            None if filter.starts_with("$share/") => return Err(PatternError::Filter("a shared subscription is $share/<group>/<filter>")),
            None => (None, filter),
        };
        Ok(Self { filter: filter.to_string(), pattern: Pattern::subscription(inner)?, share, qos, no_local, retain_as_published, id })
    }

    /// Whether `topic` matches the filter (`$` topics only by a filter that names them).
    pub fn matches(&self, topic: &str) -> bool {
        self.pattern.covers(&NOBODY, topic)
    }
}

/// Subscription filters have no placeholders: whom they are matched for does not matter.
const NOBODY: Who = Who { identity: "", client_id: "" };

/// A client with subscriptions, or a persistent session (online or not).
pub(super) struct Subscriber {
    /// Which connection holds them (a newer connection with the same client id replaces it;
    /// 0: none since the gateway started).
    pub(super) conn: u64,
    /// Its identity, for the ACL check at delivery.
    pub(super) identity: String,
    /// Where its live deliveries go (written by a task on its connection's thread); `None`
    /// while a persistent session has no connection.
    pub(super) queue: Option<mpsc::Sender<Delivery>>,
    /// Its subscriptions, one per filter.
    pub(super) subs: Vec<Subscription>,
    /// MQTT 5: one copy per matching subscription (3.1.1: one per client).
    pub(super) copy_per_subscription: bool,
    /// Kept after its connection ends, with its QoS 1 and 2 deliveries queued in the store.
    pub(super) persistent: Option<Persistent>,
}

/// What a persistent session has besides its subscriptions.
pub(super) struct Persistent {
    /// Seconds it is kept after its connection ends (`u32::MAX`: never expires; 0: it ends
    /// with this connection, which resumed it).
    pub(super) expiry_secs: u32,
    /// When its connection ended (`None` while connected).
    pub(super) offline_since: Option<std::time::Instant>,
    /// Its stored row says when it went offline (rewritten without it when it is resumed).
    pub(super) stamped: bool,
    /// Wakes its connection's writer when deliveries were queued.
    pub(super) wake: Option<std::sync::Arc<tokio::sync::Notify>>,
    /// Queued deliveries numbered below this may have been sent before (DUP on resend).
    pub(super) sent_below: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Persistent {
    /// Offline for longer than its expiry interval.
    pub(super) fn expired(&self) -> bool {
        self.expiry_secs != u32::MAX
            && self.offline_since.is_some_and(|since| since.elapsed() >= std::time::Duration::from_secs(u64::from(self.expiry_secs)))
    }
}

/// Every client's subscriptions. Entries change only through [`Table::update`], which keeps
/// the index of clients with subscriptions and the counts in step with them.
#[derive(Default)]
pub(super) struct Table {
    clients: HashMap<String, Subscriber>,
    /// The client ids of the entries with at least one subscription: what a topic is matched
    /// against.
    subscribed: HashSet<String>,
    /// Subscriptions in all entries.
    subscriptions: usize,
    /// Entries with a persistent session.
    persistent: usize,
    /// The next member's turn, per shared group and filter.
    pub(super) turns: std::sync::Mutex<HashMap<(String, String), usize>>,
}

/// One member of a shared subscription group: its client id, the client and its subscription.
type Member<'a> = (&'a str, &'a Subscriber, &'a Subscription);

/// Who gets one message: client id, its entry, and the QoS and subscription ids.
pub(super) struct Target<'a> {
    pub(super) client_id: &'a str,
    pub(super) subscriber: &'a Subscriber,
    pub(super) qos: u8,
    pub(super) retain_as_published: bool,
    pub(super) ids: Vec<u32>,
}

impl Table {
    /// The clients `topic` (published by `from`) reaches.
    pub(super) fn targets<'a>(&'a self, topic: &str, from: &str) -> Vec<Target<'a>> {
        let mut out: Vec<Target<'a>> = Vec::new();
        let mut shared: HashMap<(&str, &str), Vec<Member<'a>>> = HashMap::new();
        for client_id in &self.subscribed {
            let Some(subscriber) = self.clients.get(client_id) else { continue };
            let client_id = client_id.as_str();
            let mut target: Option<Target<'a>> = None;
            for sub in subscriber.subs.iter().filter(|s| s.matches(topic)) {
                if let Some(group) = &sub.share {
                    shared.entry((group.as_str(), sub.filter.as_str())).or_default().push((client_id, subscriber, sub));
                    continue;
                }
                if sub.no_local && client_id == from {
                    continue;
                }
                if subscriber.copy_per_subscription {
                    let ids = sub.id.into_iter().collect();
                    out.push(Target { client_id, subscriber, qos: sub.qos, retain_as_published: sub.retain_as_published, ids });
                    continue;
                }
                let t = target.get_or_insert_with(|| Target { client_id, subscriber, qos: 0, retain_as_published: false, ids: Vec::new() });
                t.qos = t.qos.max(sub.qos);
                t.retain_as_published |= sub.retain_as_published;
                t.ids.extend(sub.id);
            }
            out.extend(target);
        }
        for ((group, filter), mut members) in shared {
            members.sort_by_key(|(client_id, ..)| *client_id);
            let turn = {
                let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
                let next = turns.entry((group.to_string(), filter.to_string())).or_insert(0);
                *next = next.wrapping_add(1);
                *next - 1
            };
            let (client_id, subscriber, sub) = members[turn % members.len()];
            out.push(Target {
                client_id,
                subscriber,
                qos: sub.qos,
                retain_as_published: sub.retain_as_published,
                ids: sub.id.into_iter().collect(),
            });
        }
        out
    }

    /// Subscriptions in the table.
    pub(super) fn count(&self) -> usize {
        self.subscriptions
    }

    /// Clients with at least one subscription.
    pub(super) fn subscribers(&self) -> usize {
        self.subscribed.len()
    }

    /// Entries with a persistent session (online or not).
    pub(super) fn persistent_sessions(&self) -> usize {
        self.persistent
    }

    /// `client_id`'s entry.
    pub(super) fn get(&self, client_id: &str) -> Option<&Subscriber> {
        self.clients.get(client_id)
    }

    /// Every entry.
    pub(super) fn entries(&self) -> impl Iterator<Item = (&String, &Subscriber)> {
        self.clients.iter()
    }

    /// Entries in the table.
    pub(super) fn len(&self) -> usize {
        self.clients.len()
    }

    /// Change `client_id`'s entry: `f` gets it (`None`: there is none) and may change, add or
    /// remove it (set `None`). The only way entries change.
    pub(super) fn update<R>(&mut self, client_id: &str, f: impl FnOnce(&mut Option<Subscriber>) -> R) -> R {
        let (key, mut entry) = match self.clients.remove_entry(client_id) {
            Some((key, entry)) => (Some(key), Some(entry)),
            None => (None, None),
        };
        if let Some(e) = &entry {
            self.tally(client_id, e, false);
        }
        let out = f(&mut entry);
        if let Some(e) = entry {
            self.tally(client_id, &e, true);
            self.clients.insert(key.unwrap_or_else(|| client_id.to_string()), e);
        }
        out
    }

    /// Put `entry` in for `client_id` (replacing any).
    pub(super) fn insert(&mut self, client_id: &str, entry: Subscriber) {
        self.update(client_id, |slot| *slot = Some(entry));
    }

    /// Take `client_id`'s entry out.
    pub(super) fn remove(&mut self, client_id: &str) -> Option<Subscriber> {
        self.update(client_id, Option::take)
    }

    /// Count `e` in (`add`) or out.
    fn tally(&mut self, client_id: &str, e: &Subscriber, add: bool) {
        let persistent = usize::from(e.persistent.is_some());
        if add {
            self.subscriptions += e.subs.len();
            self.persistent += persistent;
            if !e.subs.is_empty() {
                self.subscribed.insert(client_id.to_string());
            }
        } else {
            self.subscriptions -= e.subs.len();
            self.persistent -= persistent;
            self.subscribed.remove(client_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_as_mqtt_says_with_percent_as_a_plain_character() {
        let sub = |f: &str| Subscription::new(f, 1, false, false, None).unwrap();
        assert!(sub("a/+/c").matches("a/b/c") && !sub("a/+/c").matches("a/b/d/c"));
        assert!(sub("a/#").matches("a") && sub("a/#").matches("a/b/c"));
        assert!(!sub("#").matches("$SYS/x") && !sub("+/x").matches("$app/x") && sub("$app/#").matches("$app/x"));
        assert!(sub("rate/%u").matches("rate/%u") && !sub("rate/%u").matches("rate/dev-1"), "no ACL placeholders here");
    }

    /// An entry with subscriptions to `filters`, persistent or not.
    fn entry(filters: &[&str], persistent: bool) -> Subscriber {
        Subscriber {
            conn: 1,
            identity: "dev".into(),
            queue: None,
            subs: filters.iter().map(|f| Subscription::new(f, 1, false, false, None).unwrap()).collect(),
            copy_per_subscription: false,
            persistent: persistent.then(|| Persistent {
                expiry_secs: u32::MAX,
                offline_since: None,
                stamped: false,
                wake: None,
                sent_below: Default::default(),
            }),
        }
    }

    /// The counts as a scan of every entry gives them.
    fn recounted(t: &Table) -> (usize, usize, usize) {
        let subs = t.entries().map(|(_, e)| e.subs.len()).sum();
        let subscribers = t.entries().filter(|(_, e)| !e.subs.is_empty()).count();
        let persistent = t.entries().filter(|(_, e)| e.persistent.is_some()).count();
        (subs, subscribers, persistent)
    }

    fn reached<'a>(t: &'a Table, topic: &str) -> Vec<&'a str> {
        let mut ids: Vec<&str> = t.targets(topic, "publisher").iter().map(|t| t.client_id).collect();
        ids.sort_unstable();
        ids
    }

    #[test]
    fn the_counts_and_the_clients_scanned_follow_every_change() {
        let mut t = Table::default();
        let check = |t: &Table| assert_eq!((t.count(), t.subscribers(), t.persistent_sessions()), recounted(t));
        t.insert("a", entry(&["x/#"], false));
        t.insert("b", entry(&[], true));
        t.insert("c", entry(&["x/1", "y/#"], true));
        check(&t);
        assert_eq!(reached(&t, "x/1"), ["a", "c"]);
        t.update("c", |slot| slot.as_mut().unwrap().subs.clear());
        check(&t);
        assert_eq!(reached(&t, "x/1"), ["a"]);
        t.update("b", |slot| slot.as_mut().unwrap().subs.push(Subscription::new("x/+", 0, false, false, None).unwrap()));
        check(&t);
        assert_eq!(reached(&t, "x/1"), ["a", "b"]);
        t.insert("a", entry(&[], false));
        assert!(t.remove("b").is_some() && t.remove("b").is_none());
        t.update("nobody", |slot| assert!(slot.is_none()));
        check(&t);
        assert!(reached(&t, "x/1").is_empty());
        assert_eq!((t.count(), t.subscribers(), t.persistent_sessions(), t.len()), (0, 0, 1, 2));
    }

    #[test]
    fn shared_subscriptions_parse_and_bad_filters_are_refused() {
        let s = Subscription::new("$share/g1/site/#", 1, false, false, None).unwrap();
        assert_eq!(s.share.as_deref(), Some("g1"));
        assert!(s.matches("site/a") && !s.matches("$share/g1/site/a"));
        for bad in ["$share/g1", "$share//a", "$share/g+/a", "a/#/b", "a+/b", ""] {
            assert!(Subscription::new(bad, 0, false, false, None).is_err(), "{bad:?}");
        }
    }
}
