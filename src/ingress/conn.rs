//! Per-connection state: who the device is, its session, and what it had accepted.
//! Dropping the state (the connection ended) ends the session and reports the device offline.

use edge_gateway_actors::metrics::AuthLabels;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use edge_gateway_actors::devices::DevicesMsg;
use edge_gateway_actors::record::TraceCtx;
use edge_gateway_actors::session::SessionsMsg;
use edge_gateway_actors::slot::ActorSlot;
use edge_gateway_actors::storage::now_ms;
use prometheus_client::metrics::counter::Counter;
use ractor::ActorRef;

use tokio::sync::mpsc;

use super::deliver::Outbound;
use super::replay::Replayer;
use super::window::Drops;
use super::{Ingress, IngressError, clip};
use crate::routing::Delivery;
use crate::routing::sessions::Replay;
use crate::throttle::Throttle;
use crate::trust::acl::{Decision, Who};
use crate::trust::tls::server::PeerCertInfo;
use edge_gateway_actors::storage::{SessionChange, SessionOp, StorageMsg};

/// Per-connection state held by ntex; dropping it ends the session.
#[derive(Clone)]
pub struct Conn(pub(super) Rc<ConnInner>);

/// The shared part of [`Conn`].
pub struct ConnInner {
    /// MQTT client id.
    pub(super) client_id: String,
    /// Its client certificate, re-checked at each publish (revocation, expiry).
    pub(super) cert: Option<PeerCertInfo>,
    /// The sessions actor that holds the connection's session (its entry is keyed by client
    /// id and `conn_id`).
    pub(super) sessions: ActorRef<SessionsMsg>,
    /// Set when the gateway closes the connection because its session ended (taken over by a
    /// newer connection with the same client id, or the sessions actor went down): its
    /// will is not published (MQTT 3.1.1 3.1.2-8 lists no such case; MQTT 5 3.1.2.5: a new
    /// connection for the client id came before the will was due).
    pub(super) superseded: Rc<Cell<bool>>,
    /// Handlers' access to the actors.
    pub(super) ingress: Ingress,
    /// What accepted messages are counted into (shared with detached QoS 0 appends).
    pub(super) tally: Rc<Tally>,
    /// This connection among all (its subscriptions end with it, not with a newer one's).
    pub(super) conn_id: u64,
    /// Where messages routed to this client are written.
    pub(super) outbound: Outbound,
    /// Its delivery queue, from its first SUBSCRIBE on (from CONNECT for a persistent session).
    pub(super) queue: RefCell<Option<mpsc::Sender<Delivery>>>,
    /// A persistent session's writer, made at CONNECT and started with the CONNACK (so no
    /// queued message goes out before it).
    pub(super) pending_writer: RefCell<Option<(mpsc::Receiver<Delivery>, Option<Replay>)>>,
    /// Its will, until a DISCONNECT takes it back: published when the connection ends.
    /// MQTT 5: it waits its delay interval (at most until its persistent session ends), and is
    /// not published if a new connection takes the session meanwhile.
    /// Boxed: most connections have none, and an inline one costs each ~180 bytes.
    pub(super) will: RefCell<Option<Box<super::session::Will>>>,
}

/// Per-connection counting of accepted messages. Detached QoS 0 appends hold this, not the
/// connection, so a closing connection is never kept alive by a slow commit.
pub struct Tally {
    /// `gateway_ingress_messages_total{protocol=<this connection's>, qos="0"|"1"|"2"}`, looked
    /// up once for the gateway (`Ingress::accepted_by_qos`), not per connection or message.
    pub(super) accepted_by_qos: [Counter; 3],
    /// Payload bytes of accepted publishes.
    pub(super) bytes: Counter,
    /// Messages accepted since the last report to the device health actor, and when that was.
    pub(super) unreported: Cell<(u64, std::time::Instant)>,
    /// QoS 0 appends sent and not yet committed.
    pub(super) qos0_pending: Cell<usize>,
    /// The connection has closed: a late commit reports itself.
    pub(super) closed: Cell<bool>,
    /// Whose messages these are: the device's identity (certificate, username, or the client
    /// id on a lab listener), the connection's one copy of it (`ConnInner::identity`).
    pub(super) identity: String,
    /// The device health actor.
    pub(super) devices: ActorSlot<DevicesMsg>,
}

/// QoS 0 appends a connection may have uncommitted before its handler waits for the store
/// (so a device flooding QoS 0 gets backpressure, like QoS 1 through the in-flight window).
pub(super) const QOS0_DETACHED_MAX: usize = 64;

impl Tally {
    pub(super) fn accepted(&self, qos: u8, size: u64) {
        self.accepted_by_qos[usize::from(qos.min(2))].inc();
        self.bytes.inc_by(size);
        let (n, since) = self.unreported.get();
        self.unreported.set((n + 1, since));
        self.report_seen(self.closed.get());
    }

    /// Tell the device health actor about accepted messages: at most once a second per
    /// connection (and at the end), not once per message. With the actor down (its slot
    /// empty), the count is kept.
    pub(super) fn report_seen(&self, last: bool) {
        let (n, since) = self.unreported.get();
        if n == 0 || (!last && since.elapsed() < std::time::Duration::from_secs(1)) {
            return;
        }
        if self.devices.get().is_none() {
            return;
        }
        super::outbox::to_devices(&self.devices, DevicesMsg::Seen { identity: self.identity.clone(), count: n });
        self.unreported.set((0, std::time::Instant::now()));
    }
}

impl Drop for ConnInner {
    fn drop(&mut self) {
        self.tally.closed.set(true);
        self.tally.report_seen(true);
        self.ingress.live_sessions.closed(self.identity());
        super::outbox::to_devices(&self.ingress.devices, DevicesMsg::Disconnected { identity: self.identity().to_string() });
        // Ended by itself: its close must not run (nor count it as forced).
        super::closer::disarm(self.conn_id);
        self.ingress.router.disconnect(&self.client_id, self.conn_id, |change| {
            // A session that ended with its connection (MQTT 5 session expiry 0), or one that
            // waits for its client, stamped with the time it went offline.
            if let Some(storage) = self.ingress.storage.get() {
                let op = SessionOp { client_id: self.client_id.clone(), change, reply: None };
                let _ = storage.send_message(StorageMsg::Session(op));
            }
        });
        // The will, if the device may still publish it (certificate and ACL as they are now) and
        // its connection was not taken over.
        if let Some(will) = self.will.take()
            && !self.superseded.get()
            && self.still_trusted().is_ok()
            && self.ingress.authority.may_publish(&self.who(), &will.message.topic).is_allowed()
        {
            let delay = self.ingress.router.will_delay(&self.client_id, self.conn_id, will.delay_secs);
            if delay == 0 {
                super::publish::publish_will(&self.ingress, self.identity(), &self.client_id, will.published());
            } else {
                let (ingress, identity, client_id, conn) =
                    (self.ingress.clone(), self.identity().to_string(), self.client_id.clone(), self.conn_id);
                ntex_rt::spawn(async move {
                    ntex_util::time::sleep(std::time::Duration::from_secs(u64::from(delay))).await;
                    if ingress.router.taken_since(&client_id, conn) {
                        tracing::debug!(%client_id, "A new connection took the session within the will delay; its will is not published.");
                    } else {
                        super::publish::publish_will(&ingress, &identity, &client_id, will.published());
                    }
                });
            }
        }
        super::outbox::to_sessions(&self.sessions, SessionsMsg::Closed { client_id: self.client_id.clone(), conn: self.conn_id });
        self.ingress.metrics.connections.dec();
        tracing::debug!(client_id = %self.client_id, "Connection closed.");
    }
}

impl ConnInner {
    /// `Err` when the device's certificate was revoked or expired since it connected.
    pub(super) fn still_trusted(&self) -> Result<(), IngressError> {
        let (Some(cert), Some(tls)) = (&self.cert, &self.ingress.device_tls) else { return Ok(()) };
        let Some(reason) = tls.recheck(cert, (now_ms() / 1000) as i64) else { return Ok(()) };
        self.ingress.metrics.auth_failures.get_or_create(&AuthLabels { reason }).inc();
        tracing::warn!(identity = %self.identity(), client_id = %self.client_id, %reason, "Certificate no longer valid; closing the session.");
        Err(IngressError::Untrusted { identity: self.identity().to_string(), reason })
    }

    /// This client's delivery queue; the first call starts the task that writes it.
    pub(super) fn queue(&self) -> mpsc::Sender<Delivery> {
        let mut queue = self.queue.borrow_mut();
        if let Some(tx) = &*queue {
            return tx.clone();
        }
        let (tx, rx) = self.ingress.router.queue();
        self.outbound.clone().start(rx, Drops::of(&self.ingress.router), None);
        *queue = Some(tx.clone());
        tx
    }

    /// Start the writer made at CONNECT (a persistent session's: it sends what is queued for
    /// the session first); called as the CONNACK is returned.
    pub(super) fn start_writer(&self) {
        let Some((rx, replay)) = self.pending_writer.borrow_mut().take() else { return };
        let replay = replay.map(|replay| Replayer {
            client_id: self.client_id.clone(),
            identity: self.identity().to_string(),
            replay,
            ingress: self.ingress.clone(),
        });
        self.outbound.clone().start(rx, Drops::of(&self.ingress.router), replay);
    }

    /// Commit a change of this client's persistent session; an error when the store did not.
    pub(super) async fn commit_session(&self, change: SessionChange) -> Result<(), IngressError> {
        self.ingress.commit_session(&self.client_id, change).await
    }

    /// After a SUBSCRIBE or UNSUBSCRIBE: a persistent session's subscriptions into the store,
    /// before the client is answered.
    pub(super) async fn persist_subscriptions(&self) -> Result<(), IngressError> {
        match self.ingress.router.session_row(&self.client_id, self.conn_id) {
            Some(row) => self.commit_session(SessionChange::Put(row)).await,
            None => Ok(()),
        }
    }

    /// Who the device is (certificate, username, or the client id on a lab listener); one
    /// copy, in the tallies.
    pub(super) fn identity(&self) -> &str {
        &self.tally.identity
    }

    pub(super) fn who(&self) -> Who<'_> {
        Who { identity: self.identity(), client_id: &self.client_id }
    }

    /// The ACL's decision on a publish; refusals are logged with identity, topic and the
    /// message's trace ids.
    pub(super) fn may_publish(&self, topic: &str, trace: Option<&TraceCtx>) -> bool {
        match self.ingress.authority.may_publish(&self.who(), topic) {
            Decision::Allow => true,
            Decision::Deny(reason) => {
                if ACL_REFUSALS.allow() {
                    let topic = clip(topic);
                    let (trace_id, span_id) = edge_gateway_actors::spans::log_ids(trace);
                    tracing::warn!(identity = %self.identity(), client_id = %self.client_id, ?topic, reason = reason.as_str(), trace_id, span_id, "Publish refused by the ACL (more this second are only counted).");
                }
                false
            }
        }
    }

    /// The ACL's decision on a subscription; refusals are logged with identity and filter.
    pub(super) fn may_subscribe(&self, filter: &str) -> bool {
        match self.ingress.authority.may_subscribe(&self.who(), filter) {
            Decision::Allow => true,
            Decision::Deny(reason) => {
                if ACL_REFUSALS.allow() {
                    let filter = clip(filter);
                    tracing::warn!(identity = %self.identity(), client_id = %self.client_id, ?filter, reason = reason.as_str(), "Subscribe refused by the ACL (more this second are only counted).");
                }
                false
            }
        }
    }
}

/// The device's client certificate on a TLS connection, for later re-checks.
pub(super) fn peer_cert(io: &ntex_io::IoRef) -> Option<PeerCertInfo> {
    io.query::<ntex_tls::rustls::PeerCert<'static>>().as_ref().and_then(|c| PeerCertInfo::of(c.0.as_ref()))
}

/// ACL refusals a device can trigger at will: one WARN line per second, the rest only counted.
static ACL_REFUSALS: Throttle = Throttle::new();
